from ds2ir.stages.cli import main

main()
