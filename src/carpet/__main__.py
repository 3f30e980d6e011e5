from carpet.cli import main

main()
