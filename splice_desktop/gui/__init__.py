"""Qt front end. Views, widgets and workers; all science is delegated to ``splice_desktop.core``."""
