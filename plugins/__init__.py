"""Built-in utod plugins, registered through the `utod` entry-point group like any third-party plugin."""
