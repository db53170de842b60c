from baton.cli import app

app(prog_name="baton")
