"""The one exception the deploy raises on purpose."""


class DeployError(Exception):
    """A failure the user can act on: the command prints the message, not a traceback."""
