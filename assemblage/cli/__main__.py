from assemblage.cli.main import main

main()
