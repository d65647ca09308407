"""Data the package ships or makes: the sample CT and seeded synthetic phantoms."""
