"""How much an attack hurts: metrics, typed results, evaluate over a data list, Dice-against-budget curves, reports."""
