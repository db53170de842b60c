"""Knowledge: sets of rows in the database (`store`), imports into them (`imports`), and the
embeddings and search over them."""
