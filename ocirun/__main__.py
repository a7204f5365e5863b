from ocirun.cli import main

main()
