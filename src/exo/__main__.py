from exo.cli import main

main()
