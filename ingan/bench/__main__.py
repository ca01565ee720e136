from ingan.bench.cli import main

main()
