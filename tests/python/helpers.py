"""Small pieces several test files use."""
import socket

# The two sample communities, in the timezones the generator's data is laid out for.
TWO_COMMUNITIES = """
[[communities]]
id = "python-camp"
timezone = "Asia/Shanghai"
[[communities]]
id = "data-circle"
timezone = "America/New_York"
"""


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
