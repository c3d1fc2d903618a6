from edgewise.cli.main import run

run()
