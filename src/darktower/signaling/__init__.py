"""Client signaling between participants and their meeting's MC (WebSocket, JSON, versioned)."""
