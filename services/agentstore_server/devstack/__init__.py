"""The local stack: find or build real servers, start them on 127.0.0.1, stop them."""
