"""The monitors: threads that read the machine or the log and feed the rules live.

`UsageSampler` (usage.py) measures the machine with psutil for the resource
caps; `AlertMonitor` (alerts.py) runs the alert rules over the log.
"""
