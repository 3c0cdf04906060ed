from inference_service.cli import app

app()
