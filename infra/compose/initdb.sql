-- One PostgreSQL cluster, one database per server.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
