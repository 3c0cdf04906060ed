"""Native local infrastructure: Kafka and an S3 server on loopback, for development and CI."""
