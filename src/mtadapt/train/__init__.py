"""`mtadapt train`: the fine-tuning loop.

    loop.py        the Accelerate loop (CPU, one GPU, many GPUs/nodes), dev scoring, early stopping
    schedule.py    learning-rate schedules
    checkpoint.py  atomic, pickle-free checkpoints and resume
    summary.py     what the end of a run reports
"""
