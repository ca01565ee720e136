from ingan.train.cli import main

main()
