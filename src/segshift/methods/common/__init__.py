"""Pieces shared by several methods: losses, optimizers, EMA, pseudo-labels, mixing."""
