# Terraform and the AWS provider, pinned. State lives in the cluster's state folder: clusterkit
# runs `terraform init -backend-config=path=<state folder>/terraform/terraform.tfstate`.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  backend "local" {}
}

provider "aws" {
  region = var.region

  # Every resource that takes tags carries the cluster's name and id: `clusterkit down` sweeps
  # by both.
  default_tags {
    tags = local.tags
  }
}
