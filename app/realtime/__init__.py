"""Socket.IO: server setup, namespaces, rooms, the change poller and the fan-out."""
