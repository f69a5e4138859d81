"""The mixture planner: choose the replay ratio from scaling laws fitted on short pilot runs.

``laws``, ``cmr``, ``dcpt`` and ``plan_file`` import only numpy, scipy and PyYAML, so the fitting
code runs and is tested without torch; ``sweep`` (the pilot runs) and ``plot`` import the rest.
"""
