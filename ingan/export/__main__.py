from ingan.export.cli import main

main()
