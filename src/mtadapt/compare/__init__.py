"""`mtadapt compare`: one base run, many methods, one report.

    grid.py    the grid: a base run configuration and cells that differ only in method
    runner.py  runs the cells one after another, resumably; measures parameters, size,
               memory, speed and quality of each
    report.py  the Markdown table, plots and one self-contained HTML page
"""
