from ds2ir.cli import main

main()
