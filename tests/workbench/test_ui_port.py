"""`workbench ui` on a port another process holds: one line naming --port, no traceback."""

import socket

from click.testing import CliRunner

from cli import load_commands


def test_busy_port_is_one_line_that_names_the_option(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(load_commands(), ["--db", str(tmp_path / "t.duckdb"), "ui", "--port", str(port)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"port {port}" in lines[0] and "busy" in lines[0] and f"--port {port + 1}" in lines[0]
    assert "Traceback" not in result.output and "GRADIO_SERVER_PORT" not in result.output
