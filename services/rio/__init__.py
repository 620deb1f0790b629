"""RIO (Registratie Instellingen en Opleidingen): boards, providers, locations, courses and offerings, with history."""
