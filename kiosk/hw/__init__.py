"""GPIO only: the pin driver (`pins`), the patient's button (`button`), the status light
(`leds`) and its on-screen stand-in for the demo (`terminal`)."""
