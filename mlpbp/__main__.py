from mlpbp.cli import main

main()
