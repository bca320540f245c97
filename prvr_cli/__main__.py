from prvr_cli.cli.app import main

main()
