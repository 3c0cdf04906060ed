// Workspace pages: draws each panel from its API route.
