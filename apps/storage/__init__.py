"""Where files live: the storage interface and its backends (local filesystem, Cloudinary)."""
