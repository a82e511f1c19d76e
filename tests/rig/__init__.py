"""Test rig parts that are not tests themselves.

`pins/` holds `kiosk_rig_pins`, a gpiozero pin factory for tests: gpiozero's MockFactory
with PWM pins that, like lgpio's factory, refuses every use once closed, and an optional
control socket for a test outside the daemon's process. It is a plain module directory with
its own ``*.dist-info`` (entry point ``kiosk-rig`` in ``gpiozero_pin_factories``), so
putting `PINS_DIR` on the module path is all gpiozero needs to find it by name. Read the
module's docstring for the in-process recipe and the socket protocol.
"""

from pathlib import Path

PINS_DIR = Path(__file__).resolve().parent / "pins"
FACTORY_NAME = "kiosk-rig"
