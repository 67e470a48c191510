"""One module per experiment; importing a module registers its experiment."""
