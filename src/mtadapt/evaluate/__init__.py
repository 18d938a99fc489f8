"""Scores: sacreBLEU metrics and dev scoring. Generation itself lives in `mtadapt.inference`.

    metrics.py  BLEU / chrF / chrF++ with signatures, bootstrap intervals, paired tests
    dev.py      dev-set scores during and after training (by generation; teacher-forced loss)
"""
