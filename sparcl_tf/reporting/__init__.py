"""What a run reports: class-IL / task-IL accuracy (`evaluation`), the accuracy-matrix summaries
(`metrics`), training FLOPs (`flops`), results.json (`results`) and its plots (`plots`)."""
