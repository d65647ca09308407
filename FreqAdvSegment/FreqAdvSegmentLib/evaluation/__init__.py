"""How much an attack hurts: metrics, evaluate over a data list, Dice-against-budget curves, reports."""
