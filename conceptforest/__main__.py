from conceptforest.cli import main

main()
