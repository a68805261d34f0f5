"""What comes in from files: workflow and config files (every problem at once), the Python
builder, the checks of a workflow against this machine, and the data directory's layout.
"""
