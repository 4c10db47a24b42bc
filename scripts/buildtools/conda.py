"""stub"""

def register(subparsers):
    pass
