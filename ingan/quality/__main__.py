from ingan.quality.cli import main

main()
