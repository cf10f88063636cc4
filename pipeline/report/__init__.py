"""For people: contact sheets, training curves, the demo and its report."""
