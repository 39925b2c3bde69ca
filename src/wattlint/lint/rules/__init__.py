"""Built-in rules, one module per code family."""
