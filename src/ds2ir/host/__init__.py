"""Code that runs only on the host: invoke's tasks call it; it never enters an image (nor its content tag)."""
