"""From scores to pairs and back: pair building, the `PairFilter`, decontamination, duplicates, the why-dropped waterfall, overviews and browsing."""
