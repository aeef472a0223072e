from satori_cli.app import main

main()
