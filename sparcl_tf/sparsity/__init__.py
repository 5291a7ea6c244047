"""SparCL's three kinds of sparsity, each its own module.

`masks` (mask math), `growth` (seeded growth scores), `schedule` (when and to what targets),
`tdm` (mask updates on layers), `structured` (the same at filter granularity), `dgm` (gradient
masks, used inside the train step), `ddr` (which examples to remove). The session plan
(`session.plan`) turns the schedule into events; the loop applies them.
"""
