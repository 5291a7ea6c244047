"""One continual-learning session, whatever runs its steps: the task loop (`loop`), the session
plan every engine and device app follows (`plan`), the engine contract (`engine`), the replay
buffer (`buffer`) and the portable random stream (`random`)."""
