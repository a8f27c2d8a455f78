# The source project's cluster on AWS: a VPC with a public subnet (the master, the only public
# address, NAT instance for the private subnet) and a private subnet (the workers).
# network.tf, security.tf and nodes.tf hold the parts; clusterkit/aws drives it.

locals {
  # On every resource (default_tags, and the root volumes' own tags): `clusterkit down`
  # sweeps only what carries both the name and the id.
  cluster_tags = {
    "clusterkit:cluster"    = var.cluster_name
    "clusterkit:cluster-id" = var.cluster_id
    "ManagedBy"             = "clusterkit"
  }
  # And who made it (the caller's ARN at `up`): `clusterkit doctor` tells the operator's own
  # lost cluster from another's in a shared account. None when not given (an older state).
  tags = merge(local.cluster_tags, var.owner == "" ? {} : { "clusterkit:owner" = var.owner })

  # Official images, looked up by owner and name (never a hard-coded id): Debian's account
  # publishes debian-12-amd64-*, Canonical's publishes the Ubuntu 24.04 server images.
  images = {
    "debian-12" = {
      owner = "136693071363"
      name  = "debian-12-amd64-*"
      user  = "admin"
    }
    "ubuntu-24.04" = {
      owner = "099720109477"
      name  = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      user  = "ubuntu"
    }
  }
  image = local.images[var.ami_family]
  # The zones that offer both instance types; the first of them (by name), unless
  # availability_zone names one. The public subnet's precondition refuses a zone not in it.
  zones = setintersection(data.aws_ec2_instance_type_offerings.master.locations, data.aws_ec2_instance_type_offerings.worker.locations)
  zone  = var.availability_zone != null ? var.availability_zone : try(sort(tolist(local.zones))[0], null)

  master_private_ip  = cidrhost(var.public_subnet_cidr, 10)
  worker_private_ips = [for i in range(var.worker_count) : cidrhost(var.private_subnet_cidr, 10 + i)]
}

# The zones of the region that offer each role's instance type (older types such as t2 are
# missing from some newer zones).
data "aws_ec2_instance_type_offerings" "master" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.master_instance_type]
  }
}

data "aws_ec2_instance_type_offerings" "worker" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.worker_instance_type]
  }
}

data "aws_ami" "node" {
  most_recent = true
  owners      = [local.image.owner]

  filter {
    name   = "name"
    values = [local.image.name]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }

  filter {
    name   = "root-device-type"
    values = ["ebs"]
  }
}
