from llmlab.cli.main import run

run()
