"""The media library: what formats are, what operations exist, and how a file is sniffed, inspected,
processed with FFmpeg or Pillow and checked. It imports nothing from ``apps.operations``,
``apps.storage`` or ``apps.api`` (the layer contract in ``pyproject.toml``): a processor works on
local files alone, and the operations layer does everything around it."""
