"""Image-classification datasets for training and serving the dynamic networks (no ROS here)."""
