"""What the tests share: paths, job documents, the CLI runner, HTTP stand-ins."""
